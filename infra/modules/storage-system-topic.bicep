metadata description = 'Event Grid system topic of the data lake storage account; the blob-created subscription to the function app hangs off it.'

@description('Name of the system topic.')
param name string

@description('Name of the data lake storage account in this resource group.')
param storageAccountName string

@description('Tags applied to the topic.')
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: account.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

@description('Name of the system topic.')
output name string = systemTopic.name

@description('Principal id of the system topic identity.')
output principalId string = systemTopic.identity.principalId
