metadata description = 'Data Factory with the pipeline and linked services from infra/adf/ (the files ADF Studio exports): Azure Function activity, Until + Web activity polling the app\'s status endpoint with the function key from Key Vault, Fail unless Completed.'

@description('Name of the factory.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the factory.')
param tags object = {}

@description('Base URL of the function app, e.g. https://host.')
param functionAppUrl string

@description('Key Vault URI; the vault holds the function key in secret function-app-key.')
param keyVaultUri string

var keyVaultLinkedService = loadJsonContent('../adf/linkedService/ls_key_vault.json')
var functionLinkedService = loadJsonContent('../adf/linkedService/ls_function_app.json')
var runOrchestrationPipeline = loadJsonContent('../adf/pipeline/pl_run_orchestration.json')

resource factory 'Microsoft.DataFactory/factories@2018-06-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    publicNetworkAccess: 'Enabled'
  }
}

resource keyVaultLink 'Microsoft.DataFactory/factories/linkedservices@2018-06-01' = {
  parent: factory
  name: keyVaultLinkedService.name
  properties: union(keyVaultLinkedService.properties, {
    typeProperties: union(keyVaultLinkedService.properties.typeProperties, {
      baseUrl: keyVaultUri
    })
  })
}

resource functionLink 'Microsoft.DataFactory/factories/linkedservices@2018-06-01' = {
  parent: factory
  name: functionLinkedService.name
  properties: union(functionLinkedService.properties, {
    typeProperties: union(functionLinkedService.properties.typeProperties, {
      functionAppUrl: functionAppUrl
    })
  })
  dependsOn: [
    keyVaultLink
  ]
}

// The pipeline polls the app and reads the function key itself (Web activities take no linked
// service): its functionAppUrl and keyVaultUrl parameters default to this environment's values.
var pipelineParameters = runOrchestrationPipeline.properties.parameters

resource pipeline 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: runOrchestrationPipeline.name
  properties: union(runOrchestrationPipeline.properties, {
    parameters: union(pipelineParameters, {
      functionAppUrl: union(pipelineParameters.functionAppUrl, { defaultValue: functionAppUrl })
      keyVaultUrl: union(pipelineParameters.keyVaultUrl, { defaultValue: keyVaultUri })
    })
  })
  dependsOn: [
    functionLink
  ]
}

@description('Resource id of the factory.')
output resourceId string = factory.id

@description('Name of the factory.')
output name string = factory.name

@description('Principal id of the factory identity (reads the function key from Key Vault).')
output principalId string = factory.identity.principalId

@description('Name of the pipeline that runs an orchestration.')
output pipelineName string = pipeline.name
