metadata description = 'The app identity and the compute cluster identity on the blob container of the Azure ML workspace\'s default datastore: the app uploads step code on submit and downloads job outputs, the jobs write their outputs there.'

@description('Name of the workspace storage account (in this resource group).')
param accountName string

@description('Blob container of the workspace\'s default datastore.')
param containerName string

@description('Principal (object) id of the function app identity.')
param appPrincipalId string

@description('Principal id of the compute cluster identity.')
param computePrincipalId string

@description('Role definition id granted to both on the container.')
param roleId string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource appOnWorkspaceContainer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, appPrincipalId, roleId)
  scope: container
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}

resource computeOnWorkspaceContainer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, computePrincipalId, roleId)
  scope: container
  properties: {
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}
