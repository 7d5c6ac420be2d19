metadata description = 'Event Grid subscriptions that need the deployed code: the Azure ML workspace events to their Event Grid-triggered functions, and raw BlobCreated events to the blob trigger webhook. Deployed by infra/scripts/postdeploy.sh into the application resource group.'

@description('Name of the function app (in this resource group).')
param functionAppName string

@description('The blobs_extension system key of the function app (read by the post-deploy script).')
@secure()
param blobsExtensionKey string

@description('Name of the data lake system topic (in this resource group).')
param dataLakeSystemTopicName string

@description('Container the blob trigger watches.')
param rawContainerName string = 'raw'

@description('Resource group of the Azure ML workspace and its system topic.')
param amlResourceGroupName string

@description('Name of the workspace system topic.')
param amlSystemTopicName string

@description('Resource id of the storage account that receives undeliverable events.')
param deadLetterStorageId string

@description('Container for undeliverable events.')
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Prefix of the names of the app\'s models (main.bicep output AZURE_MODEL_NAME_PREFIX): only their ModelRegistered events are delivered.')
param modelNamePrefix string = 'forecast-'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

module blobSubscription 'modules/blob-event-subscription.bicep' = {
  name: 'raw-blob-created-subscription'
  params: {
    systemTopicName: dataLakeSystemTopicName
    functionAppHostName: functionApp.properties.defaultHostName
    functionName: 'on_raw_blob_created'
    containerName: rawContainerName
    blobsExtensionKey: blobsExtensionKey
    deadLetterStorageId: deadLetterStorageId
    deadLetterContainerName: deadLetterContainerName
  }
}

module amlSubscriptions 'modules/aml-event-subscriptions.bicep' = {
  name: 'aml-event-subscriptions'
  scope: resourceGroup(amlResourceGroupName)
  params: {
    systemTopicName: amlSystemTopicName
    functionAppId: functionApp.id
    deadLetterStorageId: deadLetterStorageId
    deadLetterContainerName: deadLetterContainerName
    modelNamePrefix: modelNamePrefix
    namePrefix: functionAppName
  }
}

output AZURE_EVENT_SUBSCRIPTIONS array = concat([blobSubscription.outputs.name], amlSubscriptions.outputs.names)
